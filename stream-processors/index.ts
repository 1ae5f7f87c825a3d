export { Dispatcher, type DispatcherOptions } from './dispatcher/src/dispatcher.js';
export { loadDispatcherConfig, type DispatcherConfig } from './dispatcher/src/config.js';
export { DelayProcessor, type DelayProcessorOptions } from './delay/src/delay-processor.js';
export { Sink, type SinkOptions } from './sink/src/sink.js';
export { createSinkFromConfig } from './sink/src/main.js';
export { loadSinkConfig, type SinkConfig } from './sink/src/config.js';
