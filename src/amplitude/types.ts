/**
 * One line of an Amplitude Export API file, already `JSON.parse`d (specs/amplitude.md, "One exported event").
 * Every row carries ~55 keys with `null` for missing values; the keys are not guaranteed, so the type stays
 * an open record and code reads fields defensively. The documented keys amp-fme uses are listed in
 * `AmplitudeExportKnownFields` for reference and editor help.
 */
export type AmplitudeExportRow = Record<string, unknown>;

/** Documentation of the export fields amp-fme reads. Times are `"YYYY-MM-DD HH:MM:SS[.ffffff]"` in UTC. */
export interface AmplitudeExportKnownFields {
  /** Unique per exported row: the natural identity of an event. */
  uuid?: string;
  /** The sender's dedupe key (note the `$`; exports have no `insert_id`). */
  $insert_id?: string | null;
  /** Free text: spaces, capitals, brackets (`[Amplitude] Start Session`), unicode. */
  event_type?: string;
  /** null for anonymous events; never to be turned into the string "null". */
  user_id?: string | null;
  device_id?: string | null;
  /** Amplitude's internal user id. */
  amplitude_id?: number;
  /** When the event happened (UTC); may be null or empty. */
  event_time?: string | null;
  client_event_time?: string | null;
  client_upload_time?: string | null;
  server_received_time?: string | null;
  /** Export windows select on this one (specs/amplitude.md). */
  server_upload_time?: string | null;
  processed_time?: string | null;
  user_creation_time?: string | null;
  /** Nested objects and arrays allowed. */
  event_properties?: Record<string, unknown> | null;
  /** The user's properties at event time. */
  user_properties?: Record<string, unknown> | null;
  group_properties?: Record<string, unknown> | null;
  groups?: Record<string, unknown> | null;
  /** Epoch ms of session start, -1 for none. */
  session_id?: number;
  /** Project id. */
  app?: number;
  country?: string | null;
  region?: string | null;
  city?: string | null;
  language?: string | null;
  platform?: string | null;
  os_name?: string | null;
  os_version?: string | null;
  device_type?: string | null;
  device_family?: string | null;
  version_name?: string | null;
  library?: string | null;
}
