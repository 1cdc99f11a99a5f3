// Package integration tests drayage against real components: the machine's Docker engine
// (started by scripts/ if none answers), the managed plugin built by 'make plugin', and
// the drayage binary in legacy mode. It drives everything through the docker and drayage
// CLIs, as a user would, and checks what a user would see.
//
// Run it with 'make test' or 'make integration' (as root). It makes its own plugin
// (drayage-test:dev), image (drayage-test/busybox) and state dirs, and removes what it
// made. A missing engine fails the run; nothing is skipped.
package integration
