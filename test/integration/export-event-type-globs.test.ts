import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryLogger } from '../../src/log/logger.js';
import { exportHour, startWorld, worldConfig, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('export-events event type globs', () => {
  it('reads parentheses, pipes and slashes in include/exclude globs as the literal characters of event names', async () => {
    world = await startWorld();
    const names = [
      'Button Click (legacy)',
      'Button Click legacy',
      'Purchase (iOS)',
      'Purchase iOS',
      'Viewed /docs/../pricing',
      'Viewed /pricing',
      'Share a|b',
      'Share a',
    ];
    world.store.add(
      names.map((event_type, i) => ({ uuid: `u-${i}`, event_type, user_id: `user-${i}`, event_time: '2024-03-01 10:00:00', server_upload_time: '2024-03-01 10:00:00' })),
    );
    const { summary } = await exportHour(worldConfig(world, { properties: ['uuid'], excludeEventTypes: ['get_treatment', '* (legacy)', 'Purchase (*)', 'Viewed /docs/*', 'Share a|*'] }), '20240301T10');
    // What FME received: exactly the names no glob matches literally.
    expect(world.fme.events.map((e) => e.properties?.uuid).sort()).toEqual(['u-1', 'u-3', 'u-5', 'u-7']);
    expect(summary.skipped).toEqual({ excluded_event_type: 4 });
  });

  it('compiles and matches hard globs at once: many unclosed braces, several stars against long names', async () => {
    world = await startWorld();
    // Names of 140 characters (Amplitude allows 1024) meet `*a*a*a*a*b`: a backtracking regex tries every way to place the four
    // stars (about n^4 / 24 steps, seconds per name). A run of unclosed braces was parsed 2^n times.
    const long = 'a'.repeat(140);
    const names = [long, `${long}b`, `${long}c`, '{'.repeat(22), '{'.repeat(21)];
    world.store.add(
      names.map((event_type, i) => ({ uuid: `u-${i}`, event_type, user_id: `user-${i}`, event_time: '2024-03-01 10:00:00', server_upload_time: '2024-03-01 10:00:00' })),
    );
    const { summary } = await exportHour(worldConfig(world, { properties: ['uuid'], excludeEventTypes: ['*a*a*a*a*b', '*a*a*a*a*c', '{'.repeat(22)] }), '20240301T10');
    expect(world.fme.events.map((e) => e.properties?.uuid).sort()).toEqual(['u-0', 'u-4']);
    expect(summary.skipped).toEqual({ excluded_event_type: 3 });
  }, 120_000);
});

describe('export-events event types that become one FME eventTypeId', () => {
  it('says which Amplitude event types FME will count as one, in a warning and the summary, on the worker threads too', async () => {
    world = await startWorld();
    const at = '2024-03-01 10:00:00';
    const names = ['Video: Play', 'Video Play', 'Video Pause', '[Amplitude] Start Session', 'Amplitude Start Session'];
    world.store.add(names.map((event_type, i) => ({ uuid: `u-${i}`, event_type, user_id: `user-${i}`, event_time: at, server_upload_time: at })));
    const logger = createMemoryLogger();
    const { summary } = await exportHour(worldConfig(world, { properties: ['uuid'], workers: 1 }), '20240301T10', logger);
    // Everything is sent, as before: the user is told, and decides.
    expect(world.fme.events).toHaveLength(5);
    expect(summary.mergedEventTypes).toEqual({
      'amp.Video_Play': ['Video Play', 'Video: Play'],
      'amp.Amplitude_Start_Session': ['Amplitude Start Session', '[Amplitude] Start Session'],
    });
    const warning = logger.lines.find((l) => l.level === 'warn' && l.message.startsWith('several Amplitude event types became one FME eventTypeId'));
    expect(warning?.message).toContain('amp.Video_Play <- "Video Play", "Video: Play"');
  });

  it('has no mergedEventTypes when every event type keeps an id of its own', async () => {
    world = await startWorld();
    const at = '2024-03-01 10:00:00';
    world.store.add(['Video Play', 'Video Pause'].map((event_type, i) => ({ uuid: `u-${i}`, event_type, user_id: `user-${i}`, event_time: at, server_upload_time: at })));
    const { summary } = await exportHour(worldConfig(world, { properties: ['uuid'] }), '20240301T10');
    expect(summary.mergedEventTypes).toBeUndefined();
  });
});
