"""SQLCipher: encrypted database files keyed from a store's data keyset."""
