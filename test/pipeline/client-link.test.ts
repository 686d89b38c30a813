// ClientLink: the client's side of a request, which links each upstream call's deadline
// directly instead of through an AbortSignal per request (src/pipeline/cancellation.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CallDeadline, ClientGone, ClientLink } from '../../src/pipeline/cancellation.ts';

describe('ClientLink', () => {
  test('the client going away aborts every linked call, with the reason, and only once', () => {
    const client = new ClientLink();
    const first = new CallDeadline(60_000, client);
    const second = new CallDeadline(60_000, client);
    const gone = new ClientGone();
    client.abort(gone);
    client.abort(new Error('a second abort changes nothing'));
    assert.equal(client.aborted, true);
    assert.equal(client.reason, gone);
    for (const deadline of [first, second]) {
      assert.equal(deadline.signal.aborted, true);
      assert.equal(deadline.signal.reason, gone);
      assert.equal(deadline.timedOut, false);
      deadline.clear();
    }
  });

  test('a call cleared before the client goes away is not aborted', () => {
    const client = new ClientLink();
    const done = new CallDeadline(60_000, client);
    done.clear();
    const running = new CallDeadline(60_000, client);
    client.abort(new ClientGone());
    assert.equal(done.signal.aborted, false);
    assert.equal(running.signal.aborted, true);
    running.clear();
  });

  test('a call started after the client went away is aborted at once', () => {
    const client = new ClientLink();
    client.abort(new ClientGone());
    const late = new CallDeadline(60_000, client);
    assert.equal(late.signal.aborted, true);
    late.clear();
  });

  test('the signal is made on first use, aborted already when the client has gone', () => {
    const before = new ClientLink();
    const signal = before.signal;
    assert.equal(signal.aborted, false);
    assert.equal(before.signal, signal, 'one signal per link');
    before.abort(new ClientGone());
    assert.equal(signal.aborted, true);

    const after = new ClientLink();
    const gone = new ClientGone();
    after.abort(gone);
    assert.equal(after.signal.aborted, true);
    assert.equal(after.signal.reason, gone);
  });

  test('a lost race aborts its call, but neither the client nor the other calls', () => {
    const client = new ClientLink();
    const race = new AbortController();
    const speculative = new CallDeadline(60_000, client, race.signal);
    const routed = new CallDeadline(60_000, client);
    race.abort(new Error('the cheap answer passed the gate'));
    assert.equal(speculative.signal.aborted, true);
    assert.equal(routed.signal.aborted, false);
    assert.equal(client.aborted, false);
    speculative.clear();
    routed.clear();
  });

  test('the deadline aborts a call that runs too long, and says it timed out', async () => {
    const client = new ClientLink();
    const deadline = new CallDeadline(5, client);
    await new Promise((resolve) => deadline.signal.addEventListener('abort', resolve, { once: true }));
    assert.equal(deadline.timedOut, true);
    assert.equal(client.aborted, false);
    deadline.clear();
  });

  test("a call's options carry the cancellation as a signal and as an emitter, both made on first read", () => {
    const client = new ClientLink();
    const deadline = new CallDeadline(60_000, client);
    const call = deadline.callOptions({ name: 'm' } as never);
    const events = call.cancellation!;
    assert.equal(call.cancellation, events, 'one emitter per call');
    let fired = 0;
    events.on('abort', () => fired++);
    assert.equal(events.aborted, false);
    const gone = new ClientGone();
    client.abort(gone);
    deadline.cancel(new Error('a second cancel changes nothing'));
    assert.equal(fired, 1);
    assert.equal(events.aborted, true);
    assert.equal(events.reason, gone);
    // A signal asked for after the fact is aborted already, with the same reason.
    assert.equal(call.signal.aborted, true);
    assert.equal(call.signal.reason, gone);
    deadline.clear();

    const timedOut = new CallDeadline(60_000, new ClientLink());
    timedOut.cancel(new Error('upstream timeout'));
    const late = timedOut.callOptions({ name: 'm' } as never).cancellation!;
    assert.equal(late.aborted, true, 'an emitter made after the cancel says so');
    timedOut.clear();
  });

  test('following(signal) aborts with the signal until release()', () => {
    const caller = new AbortController();
    const link = ClientLink.following(caller.signal);
    const deadline = new CallDeadline(60_000, link);
    caller.abort(new Error('stopped by the caller'));
    assert.equal(link.aborted, true);
    assert.equal(deadline.signal.aborted, true);
    deadline.clear();

    const other = new AbortController();
    const released = ClientLink.following(other.signal);
    released.release();
    other.abort();
    assert.equal(released.aborted, false, 'a released link no longer follows');
  });
});
