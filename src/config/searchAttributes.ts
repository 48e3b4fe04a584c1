import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/** Search attributes the workflows set so that `list` and the Temporal UI can filter runs. */
export const DEPLOYMENT_ATTRIBUTE = defineSearchAttributeKey('DgDeployment', SearchAttributeType.KEYWORD);
export const TARGET_REF_ATTRIBUTE = defineSearchAttributeKey('DgTargetRef', SearchAttributeType.KEYWORD);
export const PHASE_ATTRIBUTE = defineSearchAttributeKey('DgPhase', SearchAttributeType.KEYWORD);
export const OPERATION_ATTRIBUTE = defineSearchAttributeKey('DgOperation', SearchAttributeType.KEYWORD);

/** `--search-attribute` values for `temporal server start-dev` and `temporal operator search-attribute create`. */
export const SEARCH_ATTRIBUTE_DEFINITIONS: ReadonlyArray<{ name: string; type: 'Keyword' }> = [
  DEPLOYMENT_ATTRIBUTE,
  TARGET_REF_ATTRIBUTE,
  PHASE_ATTRIBUTE,
  OPERATION_ATTRIBUTE,
].map((key) => ({ name: key.name, type: 'Keyword' as const }));
