// Command mailpit is the upstream Mailpit SMTP server with an HTTP API, built from
// github.com/axllent/mailpit for kube-org's integration tests.
package main

import "github.com/axllent/mailpit/cmd"

func main() {
	cmd.Execute()
}
