/**
 * TPM2_CreatePrimary (Part 3 §24.1): a primary key from a hierarchy seed. Deterministic: the same
 * seed and byte-identical template give the same key (the EK and SRK templates rely on it).
 */
import { b2, pcrSelection, publicArea, sensitiveCreate, ticket } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const CreatePrimary = defineCommand({
  name: 'CreatePrimary',
  code: TPM_CC.CreatePrimary,
  handles: { primaryHandle: 'auth' },
  params: {
    inSensitive: sensitiveCreate,
    inPublic: publicArea,
    outsideInfo: b2(64),
    creationPCR: pcrSelection,
  },
  responseHandle: 'objectHandle',
  response: {
    outPublic: publicArea,
    creationData: b2(1024),
    creationHash: b2(64),
    creationTicket: ticket,
    name: b2(68),
  },
});
