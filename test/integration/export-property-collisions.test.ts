import { afterEach, describe, expect, it } from 'vitest';
import { exportHour, startWorld, worldConfig, type World } from '../helpers/world.js';

let world: World | undefined;
afterEach(async () => {
  await world?.close();
  world = undefined;
});

describe('export-events property key collisions', () => {
  it('counts a property replaced by another with the same flattened key, instead of losing it unseen', async () => {
    world = await startWorld();
    const at = '2024-03-01 10:00:00';
    world.store.add([
      // `page.url` (a key with a dot, as Amplitude allows) and `page: {url}` flatten to the same key.
      { uuid: 'u-1', event_type: 'Viewed', user_id: 'user-1', event_time: at, server_upload_time: at, event_properties: { 'page.url': '/a', page: { url: '/b' } } },
      // The same value twice loses nothing: not counted.
      { uuid: 'u-2', event_type: 'Viewed', user_id: 'user-2', event_time: at, server_upload_time: at, event_properties: { 'page.url': '/c', page: { url: '/c' } } },
    ]);
    const { summary } = await exportHour(worldConfig(world), '20240301T10');
    expect(world.fme.events.map((e) => e.properties)).toEqual([{ 'page.url': '/b' }, { 'page.url': '/c' }]);
    // One value ('/a') could not be sent: the summary says so.
    expect(summary.trimmed).toEqual({ key_collision: 1 });
  });
});
