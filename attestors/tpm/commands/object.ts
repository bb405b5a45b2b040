/**
 * Object commands: TPM2_Create (Part 3 §12.1), TPM2_Load (§12.2), TPM2_ReadPublic (§12.4),
 * TPM2_Unseal (§12.7). Private/public blobs from Create load only under the same parent.
 */
import { b2, pcrSelection, publicArea, sensitiveCreate, ticket } from '../client/codec.ts';
import { defineCommand } from '../client/command.ts';
import { TPM_CC } from '../wire/constants.ts';

export const Create = defineCommand({
  name: 'Create',
  code: TPM_CC.Create,
  handles: { parentHandle: 'auth' },
  params: {
    inSensitive: sensitiveCreate,
    inPublic: publicArea,
    outsideInfo: b2(64),
    creationPCR: pcrSelection,
  },
  response: {
    outPrivate: b2(1024),
    outPublic: publicArea,
    creationData: b2(1024),
    creationHash: b2(64),
    creationTicket: ticket,
  },
});

export const Load = defineCommand({
  name: 'Load',
  code: TPM_CC.Load,
  handles: { parentHandle: 'auth' },
  params: { inPrivate: b2(1024), inPublic: publicArea },
  responseHandle: 'objectHandle',
  response: { name: b2(68) },
});

export const ReadPublic = defineCommand({
  name: 'ReadPublic',
  code: TPM_CC.ReadPublic,
  handles: { objectHandle: 'none' },
  params: {},
  response: { outPublic: publicArea, name: b2(68), qualifiedName: b2(68) },
});

export const Unseal = defineCommand({
  name: 'Unseal',
  code: TPM_CC.Unseal,
  handles: { itemHandle: 'auth' },
  params: {},
  response: { outData: b2(128) },
});
