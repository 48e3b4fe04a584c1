import {
  BinaryPayloadConverter,
  CompositePayloadConverter,
  JsonPayloadConverter,
  UndefinedPayloadConverter,
  type Payload,
  type PayloadConverter,
} from '@temporalio/common';

/** What a workflow receives in place of a value the worker could not decode. */
export interface UndecodablePayload {
  undecodablePayload: string;
}

/**
 * The default converters (undefined, binary, JSON), except that a payload they cannot decode (a
 * UI start or signal with an encoding other than json/plain, or bytes that are not JSON) becomes
 * an `UndecodablePayload` value instead of an exception. An exception would fail the workflow
 * task again and again for ever, while the run holds the deployment's lock; a value is turned by
 * the workflow into a clear bad-input failure (input) or an ignored signal.
 */
class LenientPayloadConverter implements PayloadConverter {
  private readonly inner = new CompositePayloadConverter(new UndefinedPayloadConverter(), new BinaryPayloadConverter(), new JsonPayloadConverter());

  toPayload<T>(value: T): Payload {
    return this.inner.toPayload(value);
  }

  fromPayload<T>(payload: Payload): T {
    try {
      return this.inner.fromPayload<T>(payload);
    } catch (err) {
      const encoding = payload.metadata?.encoding ? new TextDecoder().decode(payload.metadata.encoding) : '(no encoding)';
      const value: UndecodablePayload = { undecodablePayload: `encoding ${encoding}: ${(err as Error).message}` };
      return value as T;
    }
  }
}

export const payloadConverter = new LenientPayloadConverter();
