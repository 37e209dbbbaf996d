/**
 * What FME's events API takes, as specs/fme.md states it ("Events API", the event object), for the emulator.
 * Written from the spec page and not from fme/rules.ts on purpose: the emulator checks the product's rules
 * instead of repeating them, so a wrong limit in the product shows up as a refused request in the tests.
 * Where the spec gives two rules (eventTypeId), this takes the one the SDKs validate; the product keeps to
 * the stricter one.
 */

const EVENT_TYPE_ID = /^[a-zA-Z0-9][-_.:a-zA-Z0-9]{0,79}$/;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const shown = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v) : Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v);

/** Why FME would refuse this event, or undefined. */
export function fmeContractProblem(e: unknown): string | undefined {
  if (!isObject(e)) return 'event must be a JSON object';
  if (typeof e.eventTypeId !== 'string' || !EVENT_TYPE_ID.test(e.eventTypeId)) return `eventTypeId ${shown(e.eventTypeId)} is not a valid event type id`;
  if (typeof e.trafficTypeName !== 'string' || e.trafficTypeName === '' || e.trafficTypeName !== e.trafficTypeName.toLowerCase()) {
    return `trafficTypeName ${shown(e.trafficTypeName)} must be a non-empty lowercase string`;
  }
  if (typeof e.key !== 'string' || e.key.trim() === '' || e.key.length > 250) return `key ${shown(e.key)} must be a non-empty string of at most 250 characters`;
  if (typeof e.timestamp !== 'number' || !Number.isInteger(e.timestamp) || e.timestamp < 0) return `timestamp ${shown(e.timestamp)} must be epoch milliseconds`;
  if (e.value !== undefined && e.value !== null && (typeof e.value !== 'number' || !Number.isFinite(e.value))) return `value ${shown(e.value)} must be a finite number or null`;
  if (e.properties !== undefined && e.properties !== null) {
    if (!isObject(e.properties)) return 'properties must be a flat JSON object';
    const entries = Object.entries(e.properties);
    if (entries.length > 300) return `properties has ${entries.length} keys, at most 300`;
    for (const [k, v] of entries) {
      if (typeof v === 'string' && v.length > 256) return `properties.${k} is over 256 characters`;
      if (!(v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)))) return `properties.${k} must be a string, number, boolean or null`;
    }
  }
  if (Buffer.byteLength(JSON.stringify(e)) >= 32 * 1024) return 'event is 32 KB or more';
  return undefined;
}
