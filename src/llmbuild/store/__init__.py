"""The build store: content-addressed artifacts (`<store>/<stage>/<key>/`, written atomically),
the digest cache that keeps no-op builds from re-reading model files, the readable
`<store>/out/<variant>/` links, and the file locks that let several builders share one store."""
