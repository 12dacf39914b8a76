module example.com/knownline

go 1.19
