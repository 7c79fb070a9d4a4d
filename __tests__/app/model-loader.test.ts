// test/model-loader.test.ts

import { getModelLoader } from '@/utils/modelLoader';
import { MODELS } from '@/config/models';

describe('ModelLoader', () => {
  it('should load model with progress', async () => {
    const loader = getModelLoader();
    const progressValues: number[] = [];
    
    await loader.loadModel('demo', (progress) => {
      progressValues.push(progress);
    });
    
    expect(progressValues.length).toBeGreaterThan(0);
    expect(Math.max(...progressValues)).toBe(100);
  });
  
  it('should respect max concurrent models', async () => {
    const loader = getModelLoader();
    const stats = loader.getStats();
    
    expect(stats.loadedModels).toBeLessThanOrEqual(stats.maxConcurrentModels);
  });
});
