package smsq

// SetWaitHook makes Wait call f each time it found the task pending, just
// before it blocks.
func SetWaitHook(c *Client, f func(id string)) { c.waitHook = f }

// Waiting returns the number of Waits registered for task id.
func Waiting(c *Client, id string) int {
	c.hubMu.Lock()
	h := c.hub
	c.hubMu.Unlock()
	if h == nil {
		return 0
	}
	select {
	case <-h.ready:
	default:
		return 0
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiters[id])
}
