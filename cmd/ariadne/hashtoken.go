package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ariadne-tracing/ariadne/internal/serve/auth"
)

// newHashTokenCmd prints what the configuration lists for a token. The token is read from
// standard input, not from an argument, so it stays out of shell history and process lists.
func newHashTokenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-token < token-file",
		Short: "Print a token's SHA-256, the form the auth section of the config lists it in",
		Long: "Reads a bearer token from standard input (one line; surrounding whitespace is ignored) and prints\n" +
			"its SHA-256 in hex, for auth.tokens[].sha256 in the config file. The same as\n" +
			"`printf %s \"$TOKEN\" | sha256sum`. A good token: `openssl rand -hex 32`.",
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			tok := strings.TrimSpace(line)
			if tok == "" {
				if err != nil && err.Error() != "EOF" {
					return fmt.Errorf("reading the token: %w", err)
				}
				return errors.New("no token on standard input (try: printf %s \"$TOKEN\" | ariadne hash-token)")
			}
			fmt.Fprintln(cmd.OutOrStdout(), auth.HashToken(tok))
			return nil
		},
	}
}
