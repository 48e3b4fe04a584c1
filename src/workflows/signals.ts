import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ApproveSignal, RejectSignal, UpgradeStatus } from './types.js';

export const approveSignal = defineSignal<[ApproveSignal]>('approve');
export const rejectSignal = defineSignal<[RejectSignal]>('reject');
export const statusQuery = defineQuery<UpgradeStatus>('status');
