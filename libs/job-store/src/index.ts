export { JobView, viewReadyKey, type RunCounts } from './job-view.js';
