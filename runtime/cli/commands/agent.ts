/**
 * `edgeward agent`: run the gateway agent from a config file, or (`--dev`, what `npm start` runs)
 * on the embedded default — TypeScript TPM simulator and in-process issuer, state in ./.edgeward.
 * Builds the real clock, randomness and JSON-lines logger (on stdout); runs until SIGINT or
 * SIGTERM, then closes the broker, admin socket, agent, store and TPM in order.
 */
import { join } from 'node:path';
import { systemClock } from '../../core/clock.ts';
import { jsonLinesLogger, type Logger, type LogLevel } from '../../core/logger.ts';
import { cryptoRandom } from '../../core/random.ts';
import { type Command, parseFlags, UsageError } from '../command.ts';

export const command: Command = {
  name: 'agent',
  summary: '',
  help: `Usage: edgeward agent (--config FILE | --dev) [options]

  --config FILE        run with the agent config FILE
  --dev                run on the embedded default: TypeScript TPM simulator and an in-process
                       issuer, state in ./.edgeward (what \`npm start\` runs)
  --data-dir DIR       with --dev: state directory (default ./.edgeward)
  --mqtt-port N        with --dev: MQTT mTLS port (default 8883; 0 = any free port)
  --enroll-port N      with --dev: enrollment port (default 8884; 0 = any free port)
  --metrics-port N     with --dev: Prometheus /metrics on 127.0.0.1:N

Logs are JSON lines on stdout; \`edgeward status\` shows the running agent.`,
  async run(argv, io) {
    const { values } = parseFlags(
      argv,
      {
        config: { type: 'string' },
        dev: { type: 'boolean' },
        'data-dir': { type: 'string' },
        'mqtt-port': { type: 'string' },
        'enroll-port': { type: 'string' },
        'metrics-port': { type: 'string' },
      },
      { command: 'agent' },
    );
    if ((values.dev === true) === (values.config !== undefined))
      throw new UsageError('agent: give exactly one of --config FILE or --dev');
    const port = (flag: string, v: string | undefined, dflt: number): number => {
      if (v === undefined) return dflt;
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0 || n > 65535)
        throw new UsageError(`agent: --${flag} must be a port number`);
      return n;
    };
    const clock = systemClock;
    const random = cryptoRandom;
    const { runAgent } = await import('../../agent/run.ts');
    let plan: import('../../agent/run.ts').AgentPlan;
    let logger: Logger;
    if (values.dev === true) {
      logger = agentLogger('info', io.out);
      const { devPlan } = await import('../dev-plan.ts');
      const metricsPort = values['metrics-port'];
      plan = await devPlan({
        dataDir: values['data-dir'] ?? join(io.cwd, '.edgeward'),
        clock,
        random,
        logger,
        mqttPort: port('mqtt-port', values['mqtt-port'], 8883),
        enrollPort: port('enroll-port', values['enroll-port'], 8884),
        ...(metricsPort !== undefined ? { metricsPort: port('metrics-port', metricsPort, 0) } : {}),
      });
    } else {
      const { loadAgentConfigFile } = await import('../../config/agent-load.ts');
      const config = await loadAgentConfigFile(values.config as string, io.env);
      logger = agentLogger(config.log?.level ?? 'info', io.out);
      const { planFromConfig } = await import('../../agent/plan.ts');
      plan = await planFromConfig(config, { clock, random, logger });
    }
    const running = await runAgent(plan, { logger, clock, random, out: io.out });
    await new Promise<void>((resolve) => {
      if (io.stopSignal.aborted) resolve();
      else io.stopSignal.addEventListener('abort', () => resolve(), { once: true });
    });
    logger.info('stopping', { event: 'agent.stop' });
    await running.stop();
    return 0;
  },
};

/** JSON lines on stdout (pino's line format, see runtime/core/logger.ts), behind the four-method Logger. */
function agentLogger(level: LogLevel, out: (line: string) => void): Logger {
  return jsonLinesLogger({ level, name: 'edgeward-agent', now: () => systemClock.now(), write: out });
}
