// Package chaos is the model and the checker of drayage's fault campaign (make chaos).
//
// A campaign runs rounds on a real cluster (integration/chaos_test.go drives the
// engines): in each round a few operations start on random nodes — containers that
// append numbered, fsync'd records to a volume and report each one once it is durable
// ("acknowledged"), moves, copies, promotions, creates, removals, plugin restarts —
// while one fault, chosen at random, hits a node and heals again. Everything the
// operations saw is recorded in a History with timestamps.
//
// This package holds what needs no cluster: the plan of each round, drawn from a seed so
// that CHAOS_SEED replays the same choices (not the same timing: the cluster is real);
// the history; the checker, which judges the history against the copies of each volume
// the nodes hold at the end (Check); and the summary table a run prints.
package chaos
