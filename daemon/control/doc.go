// Package control is the daemon's local control API: JSON over HTTP on the unix socket
// control.sock in the state dir (root only). The drayage CLI on the same host uses it in
// both deployments, managed plugin (the state dir is mounted into the plugin) and legacy.
//
//	GET /v1/volumes         every volume (sizes not measured)
//	GET /v1/volumes/{name}  one volume, size measured (not with ?size=false)
//	DELETE /v1/volumes/{name}     remove a volume (404 if there is none)
//	POST /v1/volumes/{name}/move  move a volume to a node: {"to": NODE}
//	POST /v1/volumes/{name}/promote  make a replica the volume, its owner being down: {"to": NODE, "accept_loss": BOOL}
//	POST /v1/volumes/{name}/copy  copy a volume into a new one on a node: {"name": NEW, "to": NODE}
//	GET /v1/nodes           the cluster's nodes (?reach=false: without checking they answer)
//	GET /v1/status          this node, the store's health, members, volumes held, transfers
//
// Errors come back as {"error": "..."} with a status code that tells them apart (404 for
// a missing volume, 503 while the daemon starts); the Client turns them back into the
// volume package's sentinel errors.
package control
