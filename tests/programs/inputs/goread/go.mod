module goread

go 1.19
