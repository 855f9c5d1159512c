// Package webhook delivers every final outcome of a send task to HTTP
// endpoints, signed as the Standard Webhooks specification describes
// (https://www.standardwebhooks.com).
//
// Delivery is durable and off the send path. A Fanout reads the outcome
// stream (package outcome) with a consumer group and, for each entry and
// each endpoint, queues an asynq task of type TypeDeliver in Queue, with a
// task ID derived from the event and the endpoint, so that an entry read
// twice queues one task; only then does it acknowledge the entry. Entries a
// dead worker left unacknowledged are claimed by another with XAUTOCLAIM.
// A Deliverer runs those tasks: one signed POST per attempt, retried on
// network errors, timeouts, 5xx and 429 along Schedule; a 410 disables the
// endpoint for every worker (kept in Redis) and any other 4xx ends the
// delivery.
//
// Bodies never hold a phone number: the event carries the masked phone and
// the keyed phone hash, and every other text field is masked again before
// it is sent. Endpoints are named in Redis, logs and metrics by an ID and
// their host, never by the URL, which may carry a token. Loopback, private
// and other internal addresses are refused unless allowed, at start-up and
// on every connection and redirect (see Guard).
package webhook
