/** TPM2_Startup (Part 3 §9.3) and TPM2_Shutdown (§9.4); the semantics live in `Tpm`. */
import { TPM_CC } from '../../../attestors/tpm/wire/constants.ts';
import type { CommandSpec } from '../spec.ts';

export const startupCommands: readonly CommandSpec[] = [
  {
    cc: TPM_CC.Startup,
    name: 'Startup',
    handles: [],
    auth: [],
    run(ctx) {
      const type = ctx.at(1).u16();
      ctx.end();
      ctx.tpm.startup(type);
    },
  },
  {
    cc: TPM_CC.Shutdown,
    name: 'Shutdown',
    handles: [],
    auth: [],
    run(ctx) {
      const type = ctx.at(1).u16();
      ctx.end();
      ctx.tpm.shutdown(type);
    },
  },
];
