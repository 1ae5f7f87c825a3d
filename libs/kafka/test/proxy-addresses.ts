/** The broker's FAULTS listener is advertised at the proxy's address: clients stay behind it. */
export function proxyAddresses() {
  const [lh, lp] = (process.env['SLUICE_KAFKA_PROXY'] ?? '').split(':');
  const [th, tp] = (process.env['SLUICE_KAFKA_FAULTS_LISTENER'] ?? '').split(':');
  if (!lh || !lp || !th || !tp)
    throw new Error('the stack has no FAULTS listener: npm run stack:down && npm run stack:up');
  return { listen: { host: lh, port: Number(lp) }, target: { host: th, port: Number(tp) } };
}
