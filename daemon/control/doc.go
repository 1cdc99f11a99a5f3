// Package control is the daemon's local control API: JSON over HTTP on the unix socket
// control.sock in the state dir (root only). The drayage CLI on the same host uses it in
// both deployments, managed plugin (the state dir is mounted into the plugin) and legacy.
//
//	GET /v1/volumes         every volume (sizes not measured)
//	GET /v1/volumes/{name}  one volume, size measured
//
// Errors come back as {"error": "..."} with a status code that tells them apart (404 for
// a missing volume, 503 while the daemon starts); the Client turns them back into the
// volume package's sentinel errors.
package control
