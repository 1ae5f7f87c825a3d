import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/index.js';

describe('role loggers', () => {
  it('write JSON with the role, and never a key, a secret or prompt text', () => {
    const lines: string[] = [];
    const log = createLogger('dispatcher', { destination: { write: (l: string) => void lines.push(l) } });
    log.child({ lane: 'sluice.requests.openai' }).info(
      {
        apiKey: 'sk-live-123',
        request: { prompt: 'a secret document', messages: [{ role: 'user', content: 'text' }] },
        webhook: { secret: 'whsec_1' },
        req: { headers: { authorization: 'Bearer sk-live-123', 'x-api-key': 'sk-2' } },
        jobId: 'job_a',
      },
      'called',
    );
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ name: 'dispatcher', lane: 'sluice.requests.openai', jobId: 'job_a', msg: 'called' });
    expect(lines[0]).not.toMatch(/sk-live-123|sk-2|a secret document|whsec_1|"text"/);
    expect(line.apiKey).toBe('[redacted]');
    expect(line.request.prompt).toBe('[redacted]');
  });
});
