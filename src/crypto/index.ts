export * from './backend.ts';
export * from './blake2s.ts';
export * from './box.ts';
export * from './bytes.ts';
export * from './noble.ts';
export * from './xaead.ts';
