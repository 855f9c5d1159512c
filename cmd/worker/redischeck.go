package main

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// redisSettingsSection is the README section that says how to configure
// Redis for smsq.
const redisSettingsSection = `README "Deploying" (deploy/redis.conf)`

// checkRedisSettings warns once, at start, when Redis keeps nothing on disk
// (a restart loses every queued task, reservation and history entry) or
// evicts keys (queued tasks and reservations vanish silently under memory
// pressure). Managed Redis often refuses CONFIG: the worker then says it
// could not check and starts all the same.
func checkRedisSettings(ctx context.Context, c redis.Cmdable, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	got := map[string]string{}
	for _, name := range []string{"appendonly", "save", "maxmemory-policy"} {
		v, err := c.ConfigGet(ctx, name).Result()
		if err != nil {
			log.Info().Err(err).Msg("could not check Redis persistence and eviction settings (CONFIG GET refused); see " + redisSettingsSection)
			return
		}
		val, ok := v[name]
		if !ok {
			log.Info().Str("setting", name).Msg("could not check Redis persistence and eviction settings (CONFIG GET answered nothing); see " + redisSettingsSection)
			return
		}
		got[name] = val
	}
	if got["appendonly"] != "yes" && got["save"] == "" {
		log.Warn().Str("appendonly", got["appendonly"]).Str("save", got["save"]).
			Msg("Redis keeps nothing on disk (appendonly no and no RDB save): a Redis restart loses every queued task, reservation and history entry; set appendonly yes, see " + redisSettingsSection)
	}
	if p := got["maxmemory-policy"]; p != "noeviction" {
		log.Warn().Str("maxmemory-policy", p).
			Msg("Redis evicts keys when full (maxmemory-policy is not noeviction): queued tasks, reservations and history can vanish silently; set maxmemory-policy noeviction, see " + redisSettingsSection)
	}
}
