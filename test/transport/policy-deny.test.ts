/** Policy deny entries on a live broker: denied PUBLISHes close with a code, denied topics are not delivered (live or retained). */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { closed, nextMessage, rig } from './setup.ts';

const r = await rig({
  policy: {
    version: 1,
    rules: [
      {
        match: '{self}/device/*',
        publish: ['devices/{device}/#', 'fleet/#'],
        subscribe: ['devices/{device}/#', 'fleet/#'],
        retain: ['fleet/#'],
        deny: ['devices/{device}/secret/#', 'fleet/{device}-hidden/#'],
      },
    ],
  },
});

test('a PUBLISH on a denied topic is refused with ERR_MQTT_PUBLISH_DENIED', async () => {
  const c = await r.connect(await r.pki.device('s1'));
  const gone = closed(c);
  c.publish('devices/s1/secret/key', 'x', { qos: 1 });
  await gone;
  assert.is(r.broker.refusals().ERR_MQTT_PUBLISH_DENIED, 1);
});

test('denied topics are not delivered on an overlapping subscription, live or retained', async () => {
  // s1 may publish fleet/s2-hidden/… (its own deny is fleet/s1-hidden/#); s2 may not receive it.
  const s1 = await r.connect(await r.pki.device('s1'));
  await s1.publishAsync('fleet/s1/status', 'up', { qos: 1, retain: true });
  await s1.publishAsync('fleet/s2-hidden/r', 'kept', { qos: 1, retain: true });
  const s2 = await r.connect(await r.pki.device('s2'));
  const seen: string[] = [];
  s2.on('message', (t) => seen.push(t));
  const retained = nextMessage(s2, 'fleet/s1/status');
  assert.is((await s2.subscribeAsync('fleet/#', { qos: 1 }))[0]?.qos, 1);
  await retained;
  await s1.publishAsync('fleet/s2-hidden/live', 'x', { qos: 1 });
  const sentinel = nextMessage(s2, 'fleet/s1/sentinel');
  await s1.publishAsync('fleet/s1/sentinel', 'x', { qos: 1 });
  await sentinel;
  assert.equal(seen, ['fleet/s1/status', 'fleet/s1/sentinel']);
  await s2.endAsync();
  await s1.endAsync();
});

test.after(() => r.close());
test.run();
