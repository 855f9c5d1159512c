// Package genauth is a client for GenAuth's send-sms API, the call that makes
// GenAuth text a verification code to a phone number.
//
// A [Client] makes exactly one attempt per call and never retries on its own:
// the API has no idempotency key, so only the caller (the queue) can decide
// whether a second attempt is safe. To help it decide, every failure is a
// single typed [*Error] and [Classifier.Classify] sorts each outcome into a
// [Class]: sent, retry, throttle, duplicate, permanent or unknown. Unknown
// means the request reached GenAuth but its answer was lost, so the SMS may
// have gone out; retrying blindly could text the user a second, different
// code.
//
// Success is decided by the statusCode field of the JSON body, never by the
// HTTP status alone: GenAuth answers business failures with HTTP 200.
//
// The package knows nothing of queues, Redis or logging, and it never puts
// a phone number or access token into an error message.
package genauth
