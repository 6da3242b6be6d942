"""One module per command, each defining the function the CLI calls and the value it returns
(re-exported by `featurekit.api` and `featurekit`). The CLI only parses options and prints."""
