export { JobView, heldBackKey, isEnded, viewReadyKey, type HeldBack, type RunCounts } from './job-view.js';
export { laneLoadKey, releasePlacement } from './placement.js';
export { LiveCountsWriter, liveKey, readLiveCounts, type LiveCounts } from './live-counts.js';
export { redisKeys } from './keys.js';
export { readSinkCounts, writeSinkCounts, type SinkCounts } from './sink-counts.js';
