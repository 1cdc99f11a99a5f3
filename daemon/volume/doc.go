// Package volume is the node's volume manager: the logic behind every Docker volume plugin
// call (Create, Remove, Mount, Unmount, Path, Get, List) and the drayage CLI.
//
// A Manager is created at once and answers ErrNotReady until Init has opened the state
// dir and restored the mounts that were active before a restart, so the plugin socket can
// listen before any slow work.
//
// Mounts are counted per mount ID as a counter: the engine may mount one ID twice (docker
// run) and mounts again with the same ID for docker cp. The volume's bind mount is made on
// the first reference and removed on the last; an Unmount of an unknown ID or volume does
// nothing. The counts are kept on disk so a restarted daemon knows which volumes are still
// in use by running containers.
//
// Every error returned to a caller names the volume and the node and says what to do; the
// sentinel errors (ErrNotFound, ErrInUse, ...) are wrapped so callers can tell them apart
// with errors.Is.
package volume
