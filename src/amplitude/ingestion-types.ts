/** What amp-fme sends to Amplitude's Batch and HTTP V2 APIs (specs/amplitude.md, "Ingestion"). */
export interface AmplitudeUploadEvent {
  user_id?: string;
  device_id?: string;
  event_type: string;
  /** Epoch ms: any other format is a 400 (specs/amplitude.md). */
  time: number;
  insert_id: string;
  library: string;
  event_properties: Record<string, unknown>;
}

/** One Identify API update: plain user properties for one user or device (specs/amplitude.md, "Identify"). */
export interface AmplitudeIdentification {
  user_id?: string;
  device_id?: string;
  user_properties: Record<string, string>;
}
