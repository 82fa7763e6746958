// Runs async work one piece at a time, in call order; a failure is the
// caller's and never stops the work queued after it. The sync receivers
// serialize every cache read-modify-write through one.
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.tail.then(work, work);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
