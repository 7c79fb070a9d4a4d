// test/memory-monitor.test.ts

import { getMemoryMonitor } from '@/utils/performance/memoryMonitor';

describe('MemoryMonitor', () => {
  it('should take snapshots', async () => {
    const monitor = getMemoryMonitor();
    const snapshot = await monitor.takeSnapshot();
    
    expect(snapshot).toBeDefined();
    expect(snapshot.pressure).toMatch(/low|medium|high|critical/);
    expect(snapshot.recommendations).toBeInstanceOf(Array);
  });
  
  it('should track history', async () => {
    const monitor = getMemoryMonitor();
    
    await monitor.takeSnapshot();
    await monitor.takeSnapshot();
    
    const snapshots = monitor.getSnapshots();
    expect(snapshots.length).toBeGreaterThan(1);
  });
});
