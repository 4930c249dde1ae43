/**
 * Bulk test files in the lab's temp dir: random content of a given size, and SHA-256 of a file.
 * Namespaces share the file system, so both ends of a transfer are checked from here.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { nextSerial } from './env.ts';
import { labTempDir } from './registry.ts';

/** A fresh path in the lab's temp dir (the file is not created). */
export function tempPath(name: string): string {
  return join(labTempDir(), `${nextSerial()}-${name}`);
}

/** Writes `bytes` random bytes to a new temp file; returns its path and SHA-256 (hex). */
export function writeRandomFile(name: string, bytes: number): { path: string; sha256: string } {
  const path = tempPath(name);
  const hash = createHash('sha256');
  const fd = openSync(path, 'w', 0o600);
  try {
    const CHUNK = 1 << 20;
    for (let left = bytes; left > 0; left -= CHUNK) {
      const buf = randomBytes(Math.min(CHUNK, left));
      hash.update(buf);
      writeSync(fd, buf);
    }
  } finally {
    closeSync(fd);
  }
  return { path, sha256: hash.digest('hex') };
}

/** SHA-256 (hex) of a file's content. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(path)
      .on('data', (d) => hash.update(d))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/** Size of a file in bytes; 0 when it does not exist (e.g. a transfer that never started). */
export function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}
