// test/shared-embedding.test.ts

import { getSharedEmbeddingClient } from '@/utils/sharedEmbedding';

describe('SharedEmbeddingClient', () => {
  it('should create embeddings', async () => {
    const client = getSharedEmbeddingClient();
    const embedding = await client.createEmbedding('test');
    
    expect(embedding).toBeDefined();
    expect(embedding.length).toBeGreaterThan(0);
  });
  
  it('should use cache for same text', async () => {
    const client = getSharedEmbeddingClient();
    
    const start1 = performance.now();
    await client.createEmbedding('test repeated');
    const time1 = performance.now() - start1;
    
    const start2 = performance.now();
    await client.createEmbedding('test repeated');
    const time2 = performance.now() - start2;
    
    // Le 2ème appel devrait être beaucoup plus rapide (cache)
    expect(time2).toBeLessThan(time1 * 0.1);
  });
});
