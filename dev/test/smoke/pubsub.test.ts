import { stackSettings } from '@sluice/testing';
import { describe, expect, it } from 'vitest';
import { pubsubRoundTrip } from '../pubsub-round-trip.js';

describe('Pub/Sub emulator', () => {
  const settings = stackSettings();

  it('creates a topic and subscription, publishes and receives with attributes', async () => {
    const received = await pubsubRoundTrip(settings.pubsubEmulatorHost, settings.pubsubProject);
    const byJob = Object.fromEntries(received.map((m) => [m.attributes['jobId'], m]));
    expect(Object.keys(byJob).sort()).toEqual(['job-1', 'job-2']);
    expect(byJob['job-1']?.attributes['status']).toBe('completed');
    expect(JSON.parse(byJob['job-2']?.data.toString() ?? '{}')).toEqual({ jobId: 'job-2' });
  });
});
