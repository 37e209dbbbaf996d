/**
 * Results of tasks started in order (batches handed to worker threads), taken in that same order whichever
 * finishes first: input order is what keeps batches, checkpoints and dead letters deterministic.
 */
export class InOrder<T> {
  private readonly queue: { result: Promise<T>; ready: boolean }[] = [];

  add(result: Promise<T>): void {
    const entry = { result, ready: false };
    // Taken in order later (a failure is not unhandled meanwhile); `ready` lets finished ones go without waiting.
    result.then(
      () => (entry.ready = true),
      () => (entry.ready = true),
    );
    this.queue.push(entry);
  }

  /**
   * Hands results to `use`, oldest first: those already finished, then, waiting for them, older ones until
   * at most `keep` are left. In between, the caller reads on (and its thread decodes when the workers are
   * busy). Stops early when `use` says so (returns false). A failed task throws here.
   */
  async drain(keep: number, use: (result: T) => Promise<boolean>): Promise<void> {
    while (this.queue.length > 0 && (this.queue.length > keep || (this.queue[0] as { ready: boolean }).ready)) {
      const result = await (this.queue.shift() as { result: Promise<T> }).result;
      if (!(await use(result))) return;
    }
  }

  /** Waits for every task left, failed ones included (when a run stops, before its workers do). */
  async settle(): Promise<void> {
    await Promise.allSettled(this.queue.map((e) => e.result));
  }
}
