// Package guardsim drives the abuse guard with seeded, simulated traffic on
// a simulated clock: ordinary users, an SMS pumping attack and a flood of
// one victim's phone, so that hours of traffic run in seconds against a
// real Redis. The CI test (test/guard) and cmd/bench run it; it sends
// nothing anywhere.
//
// Each request goes through the worker's order of steps: the guard's
// Admit, then the (phone, channel) reservation of GenAuth's one-minute
// window, modelled here; a request the reservation deduplicates gives its
// count back, as the handler does.
package guardsim

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/smsq/smsq/internal/dedupe"
	"github.com/smsq/smsq/internal/guard"
	"github.com/smsq/smsq/internal/phone"
)

// Params shape the traffic.
type Params struct {
	Seed uint64
	// Users ordinary users, each asking once at a random time in
	// Duration; VerifyShare of their codes are used; ReaskShare ask again
	// one to two minutes later (and use the second code).
	Users       int
	Duration    time.Duration
	VerifyShare float64
	ReaskShare  float64
	// AttackRequests pumping requests over sequential numbers of
	// AttackRanges ranges in two countries, from AttackIPs addresses,
	// spread over AttackFor from AttackAt; none is verified.
	AttackRequests int
	AttackRanges   int
	AttackIPs      int
	AttackAt       time.Duration
	AttackFor      time.Duration
	// VictimRequests requests for one phone over VictimFor from
	// VictimAt, on three channels from rotating addresses.
	VictimRequests int
	VictimAt       time.Duration
	VictimFor      time.Duration
}

// CI is the size the CI test runs; Long is cmd/bench's.
var (
	CI = Params{Seed: 1, Users: 10_000, Duration: 6 * time.Hour, VerifyShare: 0.85, ReaskShare: 0.1,
		AttackRequests: 5_000, AttackRanges: 4, AttackIPs: 30, AttackAt: time.Hour, AttackFor: 2 * time.Hour,
		VictimRequests: 1_000, VictimAt: 2 * time.Hour, VictimFor: 30 * time.Minute}
	Long = Params{Seed: 1, Users: 100_000, Duration: 24 * time.Hour, VerifyShare: 0.85, ReaskShare: 0.1,
		AttackRequests: 50_000, AttackRanges: 12, AttackIPs: 40, AttackAt: 2 * time.Hour, AttackFor: 12 * time.Hour,
		VictimRequests: 10_000, VictimAt: 5 * time.Hour, VictimFor: 3 * time.Hour}
)

// Profiles: the defaults, and a stricter set for a service that can
// afford it.
var (
	Defaults = guard.DefaultSettings()
	Strict   = guard.Settings{Phone: "3/h,5/d", IP: "20/h,100/d", Prefix: "10/h,30/d", Countries: "+86,+1,+44,+65,+852",
		Budget: guard.DefaultBudget, Conversion: "min=30%,after=10,block=2h,window=1h,probes=3,probe-wait=10m,country-after=100", Modes: "enforce"}
)

// Report is what the traffic got.
type Report struct {
	Profile string
	// Ordinary requests, sends and requests blocked.
	Ordinary, OrdinarySent, OrdinaryBlocked int
	// Attack requests and sends (reaching GenAuth); AttackBeforeTrip the
	// sends each attacked range got before its breaker first blocked it,
	// summed (ranges never tripped count all their sends).
	Attack, AttackSent, AttackBeforeTrip int
	// Victim requests and sends.
	Victim, VictimSent int
	// Deduplicated requests (the one-minute reservation), all kinds.
	Deduplicated int
	// BlocksByRule counts blocked requests by rule.
	BlocksByRule map[string]int
	// Simulated is the simulated time, Elapsed the wall time of the run.
	Simulated, Elapsed time.Duration
}

// AttackShare is the share of attack requests that reached GenAuth.
func (r Report) AttackShare() float64 { return share(r.AttackSent, r.Attack) }

// OrdinaryBlockedShare is the share of ordinary requests blocked.
func (r Report) OrdinaryBlockedShare() float64 { return share(r.OrdinaryBlocked, r.Ordinary) }

func share(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// String is the report's one-paragraph form.
func (r Report) String() string {
	return fmt.Sprintf("%s: attack %d of %d requests sent (%.2f %%), %d before the breakers tripped; ordinary %d of %d requests blocked (%.3f %%); victim %d of %d sent; %d deduplicated; blocks by rule %v; %s",
		r.Profile, r.AttackSent, r.Attack, 100*r.AttackShare(), r.AttackBeforeTrip, r.OrdinaryBlocked, r.Ordinary, 100*r.OrdinaryBlockedShare(),
		r.VictimSent, r.Victim, r.Deduplicated, r.BlocksByRule, r.Elapsed.Round(time.Millisecond))
}

const (
	kindOrdinary = iota
	kindAttack
	kindVictim
	kindVerify
)

type event struct {
	at      time.Duration
	kind    int
	n       phone.Number
	ip      string
	channel string
	// rng is the attacked range's index, for kindAttack.
	rng int
	// user events: whether the code is used, and whether the user asks
	// again instead.
	verify, reask bool
}

type queue []event

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q queue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)        { *q = append(*q, x.(event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// clock is the simulated clock the guard reads.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// start is the simulated start: a Monday morning, UTC.
var start = time.Date(2030, 4, 1, 6, 0, 0, 0, time.UTC)

// Run plays p against the guard configured by settings on rdb, whose
// guard keys it uses (flush it first for a clean run).
func Run(ctx context.Context, rdb redis.UniversalClient, name string, settings guard.Settings, p Params) (Report, error) {
	cfg, err := settings.Config(nil)
	if err != nil {
		return Report{}, err
	}
	clk := &clock{t: start}
	h, _ := dedupe.NewHasher([]byte("guardsim-hash-key-000000"))
	g, err := guard.New(cfg, guard.Deps{Client: rdb, Hasher: h, Now: clk.now, Prefix: "sim" + strconv.FormatUint(p.Seed, 10) + name})
	if err != nil {
		return Report{}, err
	}
	r := rand.New(rand.NewPCG(p.Seed, p.Seed^0x5eed))
	q := &queue{}
	for range p.Users {
		ch := "CHANNEL_LOGIN"
		if r.Float64() < 0.3 {
			ch = "CHANNEL_REGISTER"
		}
		heap.Push(q, event{at: time.Duration(r.Int64N(int64(p.Duration))), kind: kindOrdinary, n: ordinaryNumber(r),
			ip: randomIP(r), channel: ch, verify: r.Float64() < p.VerifyShare, reask: r.Float64() < p.ReaskShare})
	}
	bases := attackRanges(p.AttackRanges)
	ips := make([]string, p.AttackIPs)
	for i := range ips {
		ips[i] = "198.51." + strconv.Itoa(r.IntN(256)) + "." + strconv.Itoa(1+r.IntN(254))
	}
	for i := range p.AttackRequests {
		k := i % len(bases)
		seq := i / len(bases)
		n, err := phone.Parse(bases[k]+fmt.Sprintf("%04d", seq%10000), "")
		if err != nil {
			return Report{}, fmt.Errorf("attack number: %w", err)
		}
		at := p.AttackAt + time.Duration(int64(p.AttackFor)*int64(i)/int64(max(1, p.AttackRequests)))
		heap.Push(q, event{at: at, kind: kindAttack, n: n, ip: ips[r.IntN(len(ips))], channel: "CHANNEL_REGISTER", rng: k})
	}
	victim, _ := phone.Parse("+8613912345678", "")
	for i := range p.VictimRequests {
		at := p.VictimAt + time.Duration(int64(p.VictimFor)*int64(i)/int64(max(1, p.VictimRequests)))
		ch := []string{"CHANNEL_LOGIN", "CHANNEL_RESET_PASSWORD", "CHANNEL_VERIFY_MFA"}[i%3]
		heap.Push(q, event{at: at, kind: kindVictim, n: victim, ip: randomIP(r), channel: ch})
	}

	rep := Report{Profile: name, BlocksByRule: map[string]int{}}
	tripped := make([]bool, len(bases))
	lastSend := map[string]time.Duration{} // the reservation: (phone, channel) → last send
	began := time.Now()
	for q.Len() > 0 {
		e := heap.Pop(q).(event)
		clk.t = start.Add(e.at)
		if e.kind == kindVerify {
			if err := g.Verified(ctx, e.n, e.channel); err != nil {
				return Report{}, err
			}
			continue
		}
		switch e.kind {
		case kindOrdinary:
			rep.Ordinary++
		case kindAttack:
			rep.Attack++
		case kindVictim:
			rep.Victim++
		}
		d, err := g.Admit(ctx, guard.Request{Phone: e.n, ClientIP: e.ip, Channel: e.channel})
		if err != nil {
			return Report{}, err
		}
		if !d.Allowed {
			rep.BlocksByRule[d.Rule]++
			switch e.kind {
			case kindOrdinary:
				rep.OrdinaryBlocked++
			case kindAttack:
				if d.Rule == guard.RuleConversion {
					tripped[e.rng] = true
				}
			}
			continue
		}
		pair := e.n.E164 + "|" + e.channel
		if last, ok := lastSend[pair]; ok && e.at-last < time.Minute {
			rep.Deduplicated++
			if err := g.Refund(ctx, d.Ticket); err != nil {
				return Report{}, err
			}
			continue
		}
		lastSend[pair] = e.at
		switch e.kind {
		case kindOrdinary:
			rep.OrdinarySent++
			switch {
			case e.reask:
				again := e
				again.at += time.Minute + time.Duration(r.Int64N(int64(time.Minute)))
				again.reask = false
				heap.Push(q, again)
			case e.verify:
				heap.Push(q, event{at: e.at + 10*time.Second + time.Duration(r.Int64N(int64(80*time.Second))), kind: kindVerify, n: e.n, channel: e.channel})
			}
		case kindAttack:
			rep.AttackSent++
			if !tripped[e.rng] {
				rep.AttackBeforeTrip++
			}
		case kindVictim:
			rep.VictimSent++
		}
	}
	rep.Elapsed = time.Since(began)
	rep.Simulated = clk.t.Sub(start)
	return rep, nil
}

var cnMobile = []string{"130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "155", "157", "158", "159", "176", "177", "178", "180", "181", "182", "185", "186", "187", "188", "189"}

// ordinaryNumber draws a valid mobile number: 85 % Chinese, the rest over
// four other countries, spread over every range.
func ordinaryNumber(r *rand.Rand) phone.Number {
	for {
		var s string
		switch x := r.Float64(); {
		case x < 0.85:
			s = "+86" + cnMobile[r.IntN(len(cnMobile))] + digits(r, 8)
		case x < 0.90:
			s = "+1" + []string{"212", "310", "415", "617", "646", "702", "305", "512"}[r.IntN(8)] + strconv.Itoa(2+r.IntN(8)) + digits(r, 6)
		case x < 0.95:
			s = "+447" + []string{"400", "500", "700", "800", "900", "911", "956"}[r.IntN(7)] + digits(r, 6)
		case x < 0.98:
			s = "+65" + []string{"8", "9"}[r.IntN(2)] + digits(r, 7)
		default:
			s = "+852" + []string{"5", "6", "9"}[r.IntN(3)] + digits(r, 7)
		}
		if n, err := phone.Parse(s, ""); err == nil {
			return n
		}
	}
}

func digits(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}

func randomIP(r *rand.Rand) string {
	return strconv.Itoa(1+r.IntN(223)) + "." + strconv.Itoa(r.IntN(256)) + "." + strconv.Itoa(r.IntN(256)) + "." + strconv.Itoa(1+r.IntN(254))
}

// attackRanges returns n range prefixes (E.164 without the last four
// digits) in two countries whose numbers are valid mobiles: the UK and
// Nigeria, both common pumping targets.
func attackRanges(n int) []string {
	var out []string
	for i := 0; len(out) < n && i < 90; i++ {
		var base string
		if i%2 == 0 {
			base = fmt.Sprintf("+447400%02d", 10+i)
		} else {
			base = fmt.Sprintf("+234803%03d", 100+i)
		}
		if _, err := phone.Parse(base+"0000", ""); err == nil {
			out = append(out, base)
		}
	}
	return out
}
