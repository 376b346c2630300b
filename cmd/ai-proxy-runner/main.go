// Command ai-proxy-runner is an Apache APISIX external plugin runner that
// gives stock APISIX an ai-proxy plugin. APISIX starts it as
// `ai-proxy-runner run`; see the README.
package main

import (
	"fmt"
	"os"
)

const usage = `usage: ai-proxy-runner <command> [flags]

commands:
  run       serve the ai-proxy plugin to APISIX and the relay (APISIX starts this)
  route     convert a route that uses the ai-proxy plugin into one for stock APISIX
  version   print the version
`

func main() {
	os.Exit(dispatch(os.Args[1:]))
}

func dispatch(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return run(args[1:])
	case "route":
		return route(args[1:], os.Stdin, os.Stdout, os.Stderr)
	case "version", "--version", "-v":
		fmt.Println("ai-proxy-runner", version)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "ai-proxy-runner: unknown command %q\n\n%s", args[0], usage)
	return 2
}
