import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { AcceptDataLossSignal, ApproveSignal, OperatorSignal, RejectSignal, UpgradeStatus } from '../domain/types.js';

export const approveSignal = defineSignal<[ApproveSignal]>('approve');
export const rejectSignal = defineSignal<[RejectSignal]>('reject');
export const statusQuery = defineQuery<UpgradeStatus>('status');
export const acceptDataLossSignal = defineSignal<[AcceptDataLossSignal]>('acceptDataLoss');
export const retrySignal = defineSignal<[OperatorSignal]>('retry');
export const abandonSignal = defineSignal<[OperatorSignal]>('abandon');
