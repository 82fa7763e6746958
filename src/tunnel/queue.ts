/**
 * An async queue for inbound frames: producers push, one consumer iterates.
 * Bounded: beyond `limit` items the producer is told to pause.
 */
export class FrameQueue<T> {
  private items: T[] = [];
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private ended = false;

  constructor(
    private readonly limit = 256,
    private readonly onRoom: () => void = () => {},
  ) {}

  /** Returns false when the queue is over its limit (producer should pause). */
  push(item: T): boolean {
    if (this.ended) return false;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: item, done: false });
      return true;
    }
    this.items.push(item);
    return this.items.length < this.limit;
  }

  end(): void {
    this.ended = true;
    if (this.waiter && this.items.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        const wasFull = this.items.length >= this.limit;
        const item = this.items.shift()!;
        if (wasFull) this.onRoom();
        yield item;
        continue;
      }
      if (this.ended) return;
      const r = await new Promise<IteratorResult<T>>((resolve) => (this.waiter = resolve));
      if (r.done) return;
      yield r.value;
    }
  }
}
