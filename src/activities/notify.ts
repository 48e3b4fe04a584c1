import { ApplicationFailure, Context } from '@temporalio/activity';
import { durationMs } from '../config/profile.js';
import { describeSecretRef, redactSecrets, resolveSecret, SecretResolutionError } from '../config/secrets.js';
import { notificationBody, type NotificationFacts, type WebhookSubscription } from '../domain/notification.js';
import { FAILURE_TYPES } from '../domain/types.js';
import { deploymentOf, secretValues } from './deployment.js';

/** A delivery that may work on the next attempt (receiver down, slow, answering 5xx). */
const DELIVERY_FAILED = 'DgNotificationFailed';

/** The deployment's webhooks, by name and events: the workflow never sees their URLs. */
export async function webhookSubscriptions(deployment: string): Promise<WebhookSubscription[]> {
  const d = deploymentOf(deployment);
  return (d.profile.notifications?.webhooks ?? []).map((w) => ({ name: w.name, events: [...w.events] }));
}

function refused(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FAILURE_TYPES.invalidProfile, nonRetryable: true });
}

/** Why a fetch failed, without the URL (it is a secret): the socket error's code, or a timeout. */
function transportProblem(err: unknown, timeout: string): string {
  const e = err as { name?: string; cause?: { code?: string; name?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeout}`;
  const code = e?.cause?.code ?? e?.cause?.name;
  return code ? `cannot reach the receiver (${code})` : 'cannot reach the receiver';
}

/**
 * POSTs one notification to one of the deployment's webhooks. The URL is resolved here, on the
 * node, and never echoed: failures name the webhook. A non-2xx answer fails the attempt (the
 * workflow's proxy retries it); the delivery ID in the body and the `Idempotency-Key` header lets
 * the receiver drop the duplicates a retry may send.
 */
export async function sendNotification(deployment: string, webhook: string, facts: NotificationFacts): Promise<{ status: number }> {
  const d = deploymentOf(deployment);
  const hook = d.profile.notifications?.webhooks.find((w) => w.name === webhook);
  if (!hook) throw refused(`webhook "${webhook}" is no longer in the profile of deployment "${deployment}"`);
  let url: string;
  try {
    url = resolveSecret(hook.url);
  } catch (err) {
    if (err instanceof SecretResolutionError) throw refused(`webhook "${webhook}": ${err.message}`);
    throw err;
  }
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    /* reported below */
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw refused(`webhook "${webhook}": the URL in ${describeSecretRef(hook.url)} is not an http:// or https:// URL`);
  }

  const uiUrl = process.env.TEMPORAL_UI_URL;
  const body = notificationBody(facts, uiUrl ? { url: uiUrl, namespace: Context.current().info.workflowNamespace ?? process.env.TEMPORAL_NAMESPACE ?? 'default' } : undefined);
  // The facts come from the run's status, which holds no secret; this makes sure of it.
  const text = redactSecrets(JSON.stringify(body), [url, ...secretValues(d)]);

  let res: Response;
  try {
    res = await fetch(parsed, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'dg-upgrade',
        'idempotency-key': facts.deliveryId,
        'x-dg-upgrade-event': facts.event,
      },
      body: text,
      signal: AbortSignal.timeout(durationMs(hook.timeout)),
      redirect: 'error',
    });
  } catch (err) {
    throw ApplicationFailure.create({ message: `webhook "${webhook}": ${transportProblem(err, hook.timeout)}`, type: DELIVERY_FAILED });
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status < 200 || res.status > 299) {
    throw ApplicationFailure.create({ message: `webhook "${webhook}": the receiver answered HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, type: DELIVERY_FAILED });
  }
  return { status: res.status };
}
