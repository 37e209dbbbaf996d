/** The FME events API wire types (specs/fme.md, "Events API"). */

/** A legal property value: anything else becomes null in the official SDKs. */
export type FmePropertyValue = string | number | boolean | null;

/** One track event, with the six keys the official SDKs send, in the order amp-fme serialises them. */
export interface FmeEvent {
  /** `^[a-zA-Z0-9][-_.:a-zA-Z0-9]{0,79}$` */
  eventTypeId: string;
  /** Non-empty, lowercase; must match the traffic type used in getTreatment. */
  trafficTypeName: string;
  /** Non-empty after trimming, at most 250 characters; the same key as in getTreatment. */
  key: string;
  /** Epoch milliseconds, UTC, integer. */
  timestamp: number;
  /** Finite number or null; left out when there is none. */
  value?: number | null;
  /** Flat; at most 300 keys; values at most 256 characters; left out when empty. */
  properties?: Record<string, FmePropertyValue>;
}
