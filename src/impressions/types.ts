/** The four shapes an FME impression dump arrives in (specs/fme.md, "Impressions"). */
export type ImpressionShape = 'webhook' | 'listener' | 'bulk' | 'grouped';

export const IMPRESSION_SHAPES: readonly ImpressionShape[] = ['webhook', 'listener', 'bulk', 'grouped'];

/** One flag evaluation, whatever shape it arrived in. Times are epoch ms (specs/fme.md). */
export interface Impression {
  key: string;
  flag: string;
  treatment: string;
  time: number;
  label?: string;
  changeNumber?: number;
  bucketingKey?: string;
  /** Only the webhook shape carries the environment (specs/fme.md). */
  environment?: string;
  /** The impression's own properties, parsed from the JSON string FME sends. */
  properties?: Record<string, unknown>;
}

/** Where a record sits in its input: the file, its line, its position in a top-level array. */
export interface RecordPosition {
  file: string;
  line: number;
  /** Element index when the record is an element of a top-level JSON array. */
  index?: number;
  /** Position inside a grouped record (bulk `i[]`, `keyImpressions[]`, an array of records). */
  item?: number;
}
