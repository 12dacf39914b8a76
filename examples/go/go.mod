module example.org/leakharness-examples

go 1.19
