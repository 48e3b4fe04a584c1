import { CancellationScope, patched, workflowInfo } from '@temporalio/workflow';
import { notifications } from './activityProxies.js';
import { causeOf } from './failures.js';
import {
  notificationFacts,
  terminalEvents,
  type NotificationEvent,
  type NotificationExtra,
  type NotificationFacts,
  type NotificationFailure,
  type StatusWithNotifications,
  type WebhookSubscription,
} from '../domain/notification.js';
import type { OperationStatus } from '../domain/types.js';

/**
 * Patch: runs send the profile's webhook notifications (an activity per delivery, off the main
 * path) and list failed deliveries in their status. Asked at a run's first event: a run that
 * passed that point on older code replays without a command more.
 */
export const WEBHOOK_NOTIFICATIONS = 'webhook-notifications';

/** Failed deliveries kept in the status: enough to see a receiver is down, bounded. */
const MAX_FAILURES = 50;

interface Notifier {
  enabled?: boolean;
  sequence: number;
  /** Each delivery waits for the previous one: events reach a receiver in order, each once. */
  chain: Promise<void>;
  subscriptions?: WebhookSubscription[];
}

/** Kept on the status object, not enumerable: the status query's copy and the history never see it. */
const KEY = '__dgNotifier';

function notifierOf(status: OperationStatus): Notifier {
  const holder = status as unknown as Record<string, Notifier | undefined>;
  let state = holder[KEY];
  if (!state) {
    state = { sequence: 0, chain: Promise.resolve() };
    Object.defineProperty(status, KEY, { value: state, enumerable: false });
  }
  return state;
}

function recordFailure(status: StatusWithNotifications, failure: NotificationFailure): void {
  const list = (status.notificationFailures ??= []);
  if (list.length < MAX_FAILURES) list.push(failure);
}

async function deliver(status: StatusWithNotifications, state: Notifier, facts: NotificationFacts): Promise<void> {
  // Never cancelled with the run: a cancelled upgrade still reports how it ended.
  await CancellationScope.nonCancellable(async () => {
    if (!state.subscriptions) {
      try {
        state.subscriptions = await notifications.webhookSubscriptions(status.deployment);
      } catch {
        // Only an unreadable or invalid profile fails this, and the run reports that itself
        // (listing it once more per event would be noise). Asked again at the next event.
        return;
      }
    }
    const hooks = state.subscriptions.filter((h) => h.events.includes(facts.event));
    await Promise.all(
      hooks.map(async (hook) => {
        try {
          await notifications.sendNotification(status.deployment, hook.name, facts);
        } catch (err) {
          recordFailure(status, { webhook: hook.name, event: facts.event, deliveryId: facts.deliveryId, error: causeOf(err) });
        }
      }),
    );
  });
}

/**
 * Sends `event` to the webhooks of the run's deployment that asked for it, without blocking: the
 * facts are taken from the status now, the delivery runs after the run's earlier ones. A failed
 * delivery (after its activity's retries) is recorded in `status.notificationFailures`, never
 * thrown. The run awaits `notificationsSettled` before it ends.
 */
export function notify(status: OperationStatus, event: NotificationEvent, extra: NotificationExtra = {}): void {
  const state = notifierOf(status);
  state.enabled ??= patched(WEBHOOK_NOTIFICATIONS);
  if (!state.enabled) return;
  const info = workflowInfo();
  const facts = notificationFacts(status, event, { workflowId: info.workflowId, runId: info.runId, sequence: ++state.sequence, at: new Date() }, extra);
  state.chain = state.chain
    .then(() => deliver(status, state, facts))
    .catch((err) => recordFailure(status, { webhook: '(all)', event, deliveryId: facts.deliveryId, error: causeOf(err) }));
}

/** Resolves when every notification sent so far has been delivered or recorded as failed. Never rejects. */
export function notificationsSettled(status: OperationStatus): Promise<void> {
  return notifierOf(status).chain;
}

/**
 * The run's last notifications, from how it ended (status.outcome), then waits for all of them.
 * A rollback that runs as an upgrade's child leaves its ending to the upgrade (`standalone: false`).
 */
export async function notifyEnd(status: OperationStatus, opts: { standalone: boolean; threw?: boolean } = { standalone: true }): Promise<void> {
  const state = notifierOf(status);
  for (const event of terminalEvents(status, opts)) notify(status, event);
  if (state.enabled) await state.chain;
}

/**
 * Awaits a run's body, then sends its last notifications (from how it ended) and waits for them,
 * whether the body returned or threw.
 */
export async function withEndNotifications<T>(status: OperationStatus, standalone: boolean, body: Promise<T>): Promise<T> {
  let value: T;
  try {
    value = await body;
  } catch (err) {
    await notifyEnd(status, { standalone, threw: true });
    throw err;
  }
  await notifyEnd(status, { standalone });
  return value;
}
