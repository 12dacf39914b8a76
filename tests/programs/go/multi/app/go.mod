module example.com/app

go 1.19

require example.com/digest v0.0.0

replace example.com/digest => ../digest
