/** A tiny typed event emitter for sockets (pure: runs in browsers and Node alike). */
export class Emitter<Events extends Record<string, unknown[]>> {
  private readonly handlers: { [K in keyof Events]?: ((...args: Events[K]) => void)[] } = {};

  on<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): this {
    (this.handlers[event] ??= []).push(fn);
    return this;
  }

  once<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): this {
    const wrap = (...args: Events[K]) => {
      this.off(event, wrap);
      fn(...args);
    };
    return this.on(event, wrap);
  }

  off<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): this {
    const list = this.handlers[event];
    if (list) {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    }
    return this;
  }

  listenerCount(event: keyof Events): number {
    return this.handlers[event]?.length ?? 0;
  }

  protected emit<K extends keyof Events>(event: K, ...args: Events[K]): void {
    const list = this.handlers[event];
    if (!list) return;
    for (const fn of [...list]) fn(...args);
  }
}
