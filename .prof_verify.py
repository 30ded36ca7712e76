import time
from service.segment import segment
from service.verify import SourceIndex, verify_claim, warm_up
warm_up()
text=open('seeds/belarus-putin-options.txt').read()
s=segment(text)
t=time.perf_counter()
idx=SourceIndex(s)
t1=time.perf_counter()
for x in s[10:15]: verify_claim(x.text+" extra words here",["s1"],idx)
print("index ms",(t1-t)*1000, "verify ms",(time.perf_counter()-t1)*1000)
