import { describe, expect, it } from 'vitest';
import { ingestionTestBed, pushConfig, startPush, stopOnFirstRequest, usersDump } from '../helpers/push.js';

const API_KEY = 'amp-test-api-key-identify-stop';
const bed = ingestionTestBed('push-identify-stop', { apiKey: API_KEY });
const { emulator } = bed;

/**
 * An identify run over `users` users (one lane, 10 per request) whose first request is held open until 50 ms after
 * the stop, which comes as that request arrives: the run's error (undefined if it ended without one).
 */
async function stoppedDuringFirstRequest(users: number): Promise<Error | undefined> {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  emulator.faults.push({ status: 200, afterProcessing: true, until: gate });
  const stop = new AbortController();
  const config = pushConfig(API_KEY, bed.url, 20, (c) => {
    c.pushImpressions.concurrency = 1;
    c.pushImpressions.batchSize = 10;
  });
  const r = startPush(bed, [usersDump(bed, `${users}-users.ndjson`, users)], { config, mode: 'identify', signal: stop.signal });
  const cancelStop = stopOnFirstRequest(emulator, stop);
  const released = new Promise<void>((resolve) => {
    stop.signal.addEventListener('abort', () => setTimeout(() => resolve(open()), 50), { once: true });
  });
  const err = (await r.done.then(
    () => undefined,
    (e: unknown) => e,
  )) as Error | undefined;
  cancelStop();
  await released;
  return err;
}

describe('identify mode: a stop while identifications are being sent', () => {
  it('stops sending them, says how many were sent, and does not speak of insert_ids', async () => {
    // 400 users, 10 per request, one lane: 40 requests of 150 ms each, about 6 s if the stop were not heard.
    emulator.faults.push({ status: 200, afterProcessing: true, delayMs: 150 }, 1000);
    const stop = new AbortController();
    const config = pushConfig(API_KEY, bed.url, 20, (c) => {
      c.pushImpressions.concurrency = 1;
      c.pushImpressions.batchSize = 10;
    });
    const r = startPush(bed, [usersDump(bed, 'many-users.ndjson', 400)], { config, mode: 'identify', signal: stop.signal });
    const cancelStop = stopOnFirstRequest(emulator, stop);
    const started = Date.now();
    const err = (await r.done.then(
      () => undefined,
      (e: unknown) => e,
    )) as Error | undefined;
    cancelStop();
    expect(err?.message).toMatch(/^stopped after \d+ of 400 users' identifications were sent; running the same command again is safe/);
    expect(err?.message).not.toMatch(/insert_id/);
    expect(Date.now() - started).toBeLessThan(3_000);
    // The requests already queued in the lane finish; no more are made.
    expect(emulator.requests.length).toBeLessThan(6);
    expect(err?.message).toContain(`stopped after ${emulator.identifications} of 400`);
  });

  it('sends nothing more once stopped: neither a request queued in the lane nor what the lane had collected', async () => {
    // 40 users: by the time the stop comes, the second request waits in the lane and the lane collects the next users.
    const err = await stoppedDuringFirstRequest(40);
    // Only the request in flight when the stop came went out, and the message counts what Amplitude stored.
    expect(emulator.requests).toHaveLength(1);
    expect(emulator.identifications).toBe(10);
    expect(err?.message).toMatch(/^stopped after 10 of 40 users' identifications were sent/);
  });

  it('a stop once every identification is queued still fails the run: the requests it kept from going out are not sent', async () => {
    // 20 users: the folding ends at once, both requests are queued, and the stop comes while the first is held
    // open; the second is then never sent.
    const err = await stoppedDuringFirstRequest(20);
    expect(emulator.identifications).toBe(10);
    expect(err?.message).toMatch(/^stopped after 10 of 20 users' identifications were sent; running the same command again is safe/);
  });

  it('a stop while reading sends nothing, and says why', async () => {
    const stop = new AbortController();
    stop.abort('SIGINT received');
    const config = pushConfig(API_KEY, bed.url, 20);
    const r = startPush(bed, [usersDump(bed, 'few-users.ndjson', 20)], { config, mode: 'identify', signal: stop.signal });
    await expect(r.done).rejects.toThrow(/identify mode sends only once every input is read .*nothing was sent/);
    expect(emulator.requests).toEqual([]);
  });
});
