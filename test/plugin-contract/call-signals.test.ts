// Each provider call's own abort signal (src/plugin-contract/call-signals.ts): aborted by
// the host's signal or by dispose, and forgotten once the call ends. The heap side of it,
// per provider, is test/plugins/provider-signals.test.ts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CallSignals } from '../../src/plugin-contract/call-signals.ts';
import { isUpstreamError, type CallOptions } from '../../src/plugin-contract/plugin-api.ts';

const callWith = (signal: AbortSignal) => ({ signal }) as CallOptions;

describe('CallSignals', () => {
  test("the host aborting a call aborts that call's signal alone, with the host's reason", () => {
    const calls = new CallSignals('the test provider');
    const first = new AbortController();
    const a = calls.begin(callWith(first.signal));
    const b = calls.begin(callWith(new AbortController().signal));
    first.abort(new Error('client went away'));
    assert.equal(a.signal.aborted, true);
    assert.equal((a.signal.reason as Error).message, 'client went away');
    assert.equal(b.signal.aborted, false);
  });

  test('a call whose host signal is already aborted begins aborted', () => {
    const calls = new CallSignals('the test provider');
    assert.equal(calls.begin(callWith(AbortSignal.abort())).signal.aborted, true);
  });

  test('end() forgets the call and stops listening to the host signal', () => {
    const calls = new CallSignals('the test provider');
    const host = new AbortController();
    const call = calls.begin(callWith(host.signal));
    assert.equal(calls.inFlight, 1);
    call.end();
    call.end();
    assert.equal(calls.inFlight, 0);
    host.abort();
    assert.equal(call.signal.aborted, false, 'an ended call no longer follows its host signal');
  });

  test('abortAll() aborts every call in flight, not ended ones, and refuses new calls', () => {
    const calls = new CallSignals('the test provider');
    const running = calls.begin(callWith(new AbortController().signal));
    const ended = calls.begin(callWith(new AbortController().signal));
    ended.end();
    calls.abortAll();
    assert.equal(running.signal.aborted, true);
    assert.equal(ended.signal.aborted, false);
    assert.throws(
      () => calls.begin(callWith(new AbortController().signal)),
      (err: unknown) => isUpstreamError(err) && err.failure === 'aborted' && /the test provider has been disposed/.test(err.message),
    );
  });
});
