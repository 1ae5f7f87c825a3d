// What other workspaces may use of the local stack: the fault suite stops and restarts the broker.
export { stackUp, stackStatus } from './stack.js';
export { runningPid } from './process.js';
